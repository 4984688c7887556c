"""A private Apache serving one local BOINC project: web pages (PHP), scheduler and upload CGIs.

BOINC's web side is PHP (the master page, ``create_account.php``, the ops pages) and its scheduler
and upload handler are CGI programs, so a real project needs a real web server. The system's Apache
is no good for tests (it may not run, it serves the machine's sites, and Debian's stock config has no
CGI with the prefork/PHP combination). So Apache runs here from a configuration of its own:

- ``Listen 127.0.0.1:PORT`` only; pid file, error and access logs, mutexes in a private directory;
- the prefork MPM (``mod_php`` is not thread-safe), ``mod_cgi`` (Debian enables ``cgid`` with the
  event MPM instead), PHP 8.2, and the handful of modules the project's ``NAME.httpd.conf`` (written
  by ``make_project``, included as is) uses;
- it runs as the service user (it refuses to run as root), in the foreground (``-DFOREGROUND``), so
  the ``Popen`` is the Apache parent and stopping it is SIGTERM plus a wait; in a session of its own,
  because a foreground prefork Apache stops by signalling its whole process group;
- readiness is an HTTP answer from ``ready_url``, polled against a deadline.
"""

import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mlds.boinc_local.deps import require_programs
from mlds.boinc_local.errors import MissingDependencyError, ServiceError
from mlds.boinc_local.waiting import tail, wait_until

MODULE_DIR = Path("/usr/lib/apache2/modules")
MODULES = (  # (name, file): prefork first, then what BOINC uses (log_config is built into Debian apache2)
    ("mpm_prefork_module", "mod_mpm_prefork.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_host_module", "mod_authz_host.so"),
    ("authz_user_module", "mod_authz_user.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authn_file_module", "mod_authn_file.so"),
    ("auth_basic_module", "mod_auth_basic.so"),
    ("alias_module", "mod_alias.so"),
    ("mime_module", "mod_mime.so"),
    ("dir_module", "mod_dir.so"),
    ("cgi_module", "mod_cgi.so"),
    ("php_module", "libphp8.2.so"),
)
MODULE_PACKAGES = {"libphp8.2.so": "libapache2-mod-php"}

CONFIG = """# Private Apache for a local BOINC project (mlds.boinc_local.apache); not the system's.
ServerRoot "{directory}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{directory}/httpd.pid"
DefaultRuntimeDir "{directory}"
Mutex file:{directory} default
ErrorLog "{directory}/error.log"
LogLevel warn
{modules}
LogFormat "%h %t \\"%r\\" %>s %b %D" timed
CustomLog "{directory}/access.log" timed
StartServers 2
MinSpareServers 1
MaxSpareServers 4
MaxRequestWorkers 16
Timeout 60
TypesConfig /etc/mime.types
DirectoryIndex index.php index.html
<FilesMatch "\\.php$">
    SetHandler application/x-httpd-php
</FilesMatch>
DocumentRoot "{directory}/htdocs"
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "{directory}/htdocs">
    Require all granted
</Directory>
{includes}
"""


def check_apache():
    """``apache2`` and every module the private configuration loads; returns ``apache2``'s path."""
    (apache2,) = require_programs({"apache2": "apache2"}).values()
    for _, filename in MODULES:
        if not (MODULE_DIR / filename).exists():
            raise MissingDependencyError(f"Apache module {MODULE_DIR / filename}", [MODULE_PACKAGES.get(filename, "apache2")])
    return apache2


@dataclass(frozen=True)
class ApacheConfig:
    """``directory``: config, logs, pid (owned by the service user); ``includes``: config files."""

    directory: Path
    port: int
    includes: tuple = ()
    ready_path: str = "/"
    start_timeout: float = 60.0
    extra: str = field(default="", repr=False)  # more config lines, appended


class ApacheServer:
    """A running private ``apache2 -DFOREGROUND``; ``url``, ``error_log``, ``access_log``, ``stop()``."""

    def __init__(self, config, service_user):
        self.config, self.service_user = config, service_user
        self.directory = Path(config.directory)
        self.url = f"http://127.0.0.1:{config.port}/"
        self.error_log = self.directory / "error.log"
        self.access_log = self.directory / "access.log"
        self.process = None

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def write_config(self):
        modules = "\n".join(f"LoadModule {name} {MODULE_DIR / filename}" for name, filename in MODULES)
        text = CONFIG.format(
            directory=self.directory, port=self.config.port, modules=modules,
            includes="\n".join(f'Include "{path}"' for path in self.config.includes) + "\n" + self.config.extra,
        )  # fmt: skip
        path = self.directory / "httpd.conf"
        path.write_text(text)
        self.service_user.chown(path)
        return path

    def start(self):
        apache2 = check_apache()
        self.service_user.make_dir(self.directory)
        self.service_user.make_dir(self.directory / "htdocs")
        config = self.write_config()
        self._check_syntax(apache2, config)
        log = open(self.directory / "apache2.out", "w")
        with log:
            self.process = self.service_user.popen(
                [apache2, "-f", config, "-DFOREGROUND"], cwd=self.directory,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        ready = self.url.rstrip("/") + self.config.ready_path
        wait_until(lambda: self._answers(ready), self.config.start_timeout, f"Apache to answer {ready}", log=self.error_log)
        return self

    def _check_syntax(self, apache2, config):
        done = self.service_user.run([apache2, "-f", config, "-t"], check=False, cwd=self.directory)
        if done.returncode != 0:
            raise ServiceError(f"Apache rejects {config}:\n{done.stdout}{done.stderr}", config)

    def _answers(self, url):
        if self.process.poll() is not None:
            raise ServiceError(
                f"apache2 exited {self.process.returncode} while starting:\n{tail(self.error_log)}"
                f"{tail(self.directory / 'apache2.out')}",
                self.error_log,
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status == 200
        except urllib.error.HTTPError as error:
            raise ServiceError(f"{url} answered HTTP {error.code}:\n{tail(self.error_log)}", self.error_log) from None
        except OSError:
            return False

    def stop(self, timeout=30):
        """SIGTERM to the Apache parent (it stops its children), then wait for it to exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise ServiceError(f"apache2 did not stop within {timeout} s of SIGTERM; killed", self.error_log) from None

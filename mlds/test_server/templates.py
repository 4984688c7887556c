"""Input and output templates, processed the way create_work and the transitioner do.

Input template (``<input_template>``): one ``<file_info>`` per input file, in order. An empty one
takes the next file named on the command line; one with ``<physical_name>`` is a constant file.
The ``<workunit>`` holds one ``<file_ref>`` per file (``<open_name>``, optional ``<copy_file/>``),
and may set ``<command_line>``, the ``rsc_*`` limits, ``delay_bound`` and the result counts, which
override the command line's values. Other elements are copied through to the client unchanged.

Output template (``<output_template>``): ``<OUTFILE_n/>`` becomes ``<result name>_n``, and a
``<url><UPLOAD_URL/></url>`` becomes this server's upload URL when the result is sent (a literal URL is
kept). Each output ``<file_info>`` needs ``<max_nbytes>``: the upload handler enforces it. The
``<result>`` holds the output ``<file_ref>``s.
"""

import dataclasses
import os
import re
import time
from dataclasses import dataclass

from lxml import etree

from mlds.test_server import db, keys
from mlds.test_server.errors import CreateWorkError, ProjectError
from mlds.test_server.project import check_physical_name, place_file
from mlds.test_server.xmlsafe import parse_xml

INPUT_FILE_FIELDS = ("physical_name", "number", "url", "md5_cksum", "nbytes", "gzip", "gzipped_nbytes")
WORKUNIT_FLOATS = ("rsc_fpops_est", "rsc_fpops_bound", "rsc_memory_bound", "rsc_disk_bound")
WORKUNIT_INTS = ("delay_bound", "min_quorum", "target_nresults", "max_error_results", "max_total_results", "max_success_results", "batch")
IGNORED_WORKUNIT = ("rsc_bandwidth_bound", "size_class")
OUTFILE = re.compile(r"<OUTFILE_(\d+)/>")


@dataclass(frozen=True)
class WuFile:
    """An input file as the client gets it: ``url`` empty means "this server's download URL"."""

    name: str
    open_name: str
    copy_file: int
    url: str
    nbytes: int
    md5: str
    extra_xml: str


@dataclass(frozen=True)
class InputDraft:
    job: object  # the JobDescription with the template's overrides
    files: tuple
    extra_xml: str


@dataclass(frozen=True)
class ResultFile:
    """An output file: ``url`` empty means "this server's upload URL"."""

    name: str
    open_name: str
    max_nbytes: int
    url: str
    copy_file: int
    extra_xml: str


def serialize(elements):
    return "\n".join(etree.tostring(e, encoding="unicode", with_tail=False) for e in elements)


def _template_root(data, tag, what):
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if f"<{tag}>" not in text:
        text = f"<{tag}>{text}</{tag}>"  # BOINC accepts templates without the enclosing element
    root = parse_xml(text.encode("utf-8"), what, limit=1 << 20, error=CreateWorkError)
    if root.tag != tag:
        raise CreateWorkError(f"{what}: the root element must be <{tag}>")
    return root


def process_input_template(data, config, job):
    """``InputDraft`` of ``job`` with the input template ``data`` applied."""
    root = _template_root(data, "input_template", "input template")
    workunit = root.find("workunit")
    if workunit is None:
        raise CreateWorkError("input template: no <workunit> element")
    var_files = list(job.infiles)
    files = []
    for info in root.findall("file_info"):
        files.append(_input_file(info, config, var_files, len(files)))
    if var_files:
        raise CreateWorkError(f"{len(var_files)} more input file(s) given than the template's <file_info>s")
    job, refs, extra = _apply_workunit(workunit, job)
    if len(refs) > len(files):
        raise CreateWorkError("input template: too many <file_ref>s")
    files = [_with_ref(f, ref) for f, ref in zip(files, refs)] + files[len(refs) :]
    return InputDraft(job, tuple(files), serialize(extra))


def _input_file(info, config, var_files, position):
    if info.find("gzip") is not None or info.find("url") is not None or info.find("nbytes") is not None:
        raise CreateWorkError("input template: gzip and remote files in the template are not supported by the test server")
    extra = serialize(child for child in info if child.tag not in INPUT_FILE_FIELDS)
    physical = (info.findtext("physical_name") or "").strip()
    if physical:
        path = config.download_path(_physical(physical))
        if not os.path.isfile(path):
            raise CreateWorkError(f"constant input file {physical} is not in the download hierarchy")
        return _local_file(physical, path, extra)
    if not var_files:
        raise CreateWorkError(f"Too few var input files given; need at least {position + 1}")
    given = var_files.pop(0)
    if isinstance(given, str):
        return _local_file(given, _staged(config, _physical(given)), extra)
    return WuFile(f"jf_{given.md5}", "", 0, given.url, given.nbytes, given.md5, extra)


def _physical(name):
    try:
        return check_physical_name(name)
    except ProjectError as exc:
        raise CreateWorkError(str(exc)) from None


def _staged(config, name):
    """The hierarchy path of an input; a file at the top of ``download/`` is copied in, as create_work does."""
    path = config.download_path(name)
    top = os.path.join(config.download_dir, name)
    if not os.path.exists(path) and os.path.isfile(top):
        place_file(top, path)
    if not os.path.isfile(path):
        raise CreateWorkError(f"input file {name} is neither in the download hierarchy nor in {config.download_dir}")
    return path


def _local_file(name, path, extra):
    return WuFile(name, "", 0, "", os.path.getsize(path), keys.file_md5(path), extra)


def _apply_workunit(workunit, job):
    changes, refs, extra = {}, [], []
    for child in workunit:
        tag, text = child.tag, (child.text or "").strip()
        if tag == "file_ref":
            refs.append(child)
        elif tag == "command_line":
            if job.command_line:
                raise CreateWorkError(f"Can't specify command line {text}; already specified as {job.command_line}")
            changes["command_line"] = text
        elif tag in WORKUNIT_FLOATS + WORKUNIT_INTS:
            changes[tag] = _template_number(tag, text)
        elif tag not in IGNORED_WORKUNIT:
            extra.append(child)
    return dataclasses.replace(job, **changes), refs, extra


def _template_number(tag, text):
    try:
        return float(text) if tag in WORKUNIT_FLOATS else int(float(text))
    except ValueError:
        raise CreateWorkError(f"input template: <{tag}> {text!r} is not a number") from None


def _with_ref(wu_file, ref):
    open_name = (ref.findtext("open_name") or "").strip()
    copy_file = ref.find("copy_file") is not None
    unknown = [child.tag for child in ref if child.tag not in ("open_name", "copy_file", "file_number", "file_name")]
    if unknown:
        raise CreateWorkError(f"input template: <file_ref> elements {unknown} are not supported by the test server")
    if not open_name and not copy_file:
        raise CreateWorkError("No open name found and copy_file not specified")
    return dataclasses.replace(wu_file, open_name=open_name or wu_file.name, copy_file=int(copy_file))


def process_output_template(data, result_name):
    """``(files, result_extra_xml)`` of the output template for the result ``result_name``."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    text = OUTFILE.sub(lambda match: f"{result_name}_{match.group(1)}", text)
    root = _template_root(text, "output_template", "output template")
    files = [_output_file(info) for info in root.findall("file_info")]
    result = root.find("result")
    if result is None or not files:
        raise CreateWorkError("output template: needs <file_info>s and a <result>")
    by_name = {f.name: f for f in files}
    extra = []
    for child in result:
        if child.tag != "file_ref":
            extra.append(child)
            continue
        name = (child.findtext("file_name") or "").strip()
        if name not in by_name:
            raise CreateWorkError(f"output template: <file_ref> names {name!r}, which has no <file_info>")
        open_name = (child.findtext("open_name") or "").strip() or name
        by_name[name] = dataclasses.replace(by_name[name], open_name=open_name, copy_file=int(child.find("copy_file") is not None))
    return [by_name[f.name] for f in files], serialize(extra)


def _output_file(info):
    name = _physical((info.findtext("name") or "").strip())
    try:
        max_nbytes = int(float(info.findtext("max_nbytes") or "nan"))
    except ValueError:
        raise CreateWorkError(f"output template: {name} needs a numeric <max_nbytes>") from None
    if max_nbytes <= 0:
        raise CreateWorkError(f"output template: {name}: <max_nbytes> must be positive")
    url = info.find("url")
    if url is None:
        raise CreateWorkError(f"output template: {name} needs <url><UPLOAD_URL/></url>")
    literal = "" if url.find("UPLOAD_URL") is not None else (url.text or "").strip()
    extra = serialize(child for child in info if child.tag not in ("name", "max_nbytes", "url"))
    return ResultFile(name, "", max_nbytes, literal, 0, extra)


def create_result(connection, wuid, name, result_template):
    """Insert the result ``name`` of workunit ``wuid`` and its output files (the transitioner's job)."""
    files, extra = process_output_template(result_template, name)
    result_id = db.insert(connection, "result", name=name, wuid=wuid, result_xml=extra, create_time=time.time())
    for position, result_file in enumerate(files):
        if connection.execute("SELECT 1 FROM result_file WHERE name = ?", (result_file.name,)).fetchone():
            raise CreateWorkError(f"output file name {result_file.name} is used by another result")
        db.insert(connection, "result_file", result_id=result_id, position=position, **dataclasses.asdict(result_file))
    return result_id

"""The test server's one small error hierarchy; the CLI maps it to exit codes in one place."""


class ServerError(Exception):
    """Base of every error the test project server raises on purpose."""


class ProjectError(ServerError):
    """The project directory, its configuration, keys or app versions cannot be used."""


class CreateWorkError(ServerError):
    """create_work arguments, a --stdin line or a template that create_work would refuse."""


class ProtocolError(ServerError):
    """A request from a client that the server refuses (malformed, too large, not allowed)."""


class UploadRefused(ProtocolError):
    """An upload the handler refuses; ``transient`` tells the client to retry (status 1) or not (-1)."""

    def __init__(self, message, transient=False):
        super().__init__(message)
        self.transient = transient

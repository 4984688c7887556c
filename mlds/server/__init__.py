"""mlds inside a real BOINC project: its config.xml, its database, the state mlds keeps there,
the daemon conventions, and the admin's install and publish steps."""

"""Checks of one returned result against its workunit spec (the script_validator contract)."""

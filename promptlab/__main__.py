from promptlab.cli.main import entry

entry()

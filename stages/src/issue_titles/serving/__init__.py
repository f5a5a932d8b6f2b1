"""Model serving: an MLServer custom runtime answering V2 and the Seldon v1 protocol (see README.md).

Import the submodules (`runtime`, `server`, `settings`, `limits`); this package imports nothing heavy, so
`import issue_titles.serving` stays cheap for code that only needs the settings writer.
"""

"""Serving: the record of what production sees (inference log, label feed) and how it is served."""

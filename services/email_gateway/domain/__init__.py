"""The email gateway's pure rules: no I/O, no framework imports."""

"""Storage of the control plane's table families, one module each: every SQL statement on
a family's tables lives in its module, behind functions that take a connection (or pool)
and return rows or rendered objects. Roles call these; they write no SQL for these tables.
"""

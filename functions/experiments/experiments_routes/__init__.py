"""The experiments function's routes, one Powertools Router per resource, each with its scopes.

A package of the function's own folder (not the shared layer): `sam build` copies the whole CodeUri
folder, and locally every function folder is on one sys.path (localdev.template.use_function_folders),
so the package is named after its function, as handler modules are, to stay unique.
"""

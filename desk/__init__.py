"""The desk: web pages for clerks, supervisors, auditors, operators and admins, and the public
verification page (issue 24). A front-end over the same use cases as the CLI (``usecases.desk``): it
parses requests and renders pages, and maps errors to HTTP statuses in one place (``desk.app``)."""

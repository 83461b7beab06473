"""Stage 7: what the user sees, rendered by what it is (plans, status, history, locks, results),
from result values only.

Secrets are masked at the source, in one of two ways. Output built from data (plans, status,
history, the resolved model, JSON documents) is masked as data: secret values are replaced in the
values of the structure before it is serialised, and identifiers (service, container, project,
image, network, volume names), keys, booleans and numbers never are, so a weak secret that equals
a service name does not hide the service, and JSON stays JSON. Free text that can carry values
(logs, errors, Compose's and the engine's messages) goes through the Redactor, which also knows
each secret's escaped forms.
"""

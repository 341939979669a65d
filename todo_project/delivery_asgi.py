"""ASGI entry point of the Dapr delivery pods: ``uvicorn todo_project.delivery_asgi:application``.

See todo_project/delivery.py. Needs EVENT_TRANSPORT=dapr and DAPR_APP_API_TOKEN (else it refuses to
start), and DAPR_CONSUMERS naming the consumer(s) of the pod.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")
django.setup(set_prefix=False)

from todo_project.delivery import delivery_application  # noqa: E402

application = delivery_application()

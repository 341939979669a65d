"""Liveness, readiness and metrics endpoints for probes and Prometheus.

The web application and the Dapr delivery application (todo_project/delivery.py) both serve
``urlpatterns``. Their paths are exempt from the HTTPS redirect (SECURE_REDIRECT_EXEMPT): the
kubelet probes over plain http.
"""

from django.http import HttpResponse, JsonResponse
from django.urls import path
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from events import readiness


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    # Ready while the database answers: Kafka and Redis are reported, see events/readiness.py.
    status, body = readiness.WEB.report()
    return JsonResponse(body, status=status)


def metrics(request):
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]

"""The routes of the Dapr delivery application (todo_project/delivery.py): the sidecar's and the probes'."""

from django.urls import include, path

from todo_project import health

urlpatterns = [
    *health.urlpatterns,
    path("dapr/", include("events.urls")),
]

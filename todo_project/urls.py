from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from todo_project import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # The Dapr sidecar's routes (EVENT_TRANSPORT=dapr): subscription document and deliveries.
    path("dapr/", include("events.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # Each app owns its API routes under /api/.
    path("api/", include("tasks.urls")),
    path("api/", include("audit.urls")),
    path("api/", include("notifications.urls")),
    # The e-mail confirmation link's page (/confirm-email/<token>/).
    path("", include("notifications.web_urls")),
    # The web app (task list, sign-up, sign-in) at the root.
    path("", include("tasks.web_urls")),
]

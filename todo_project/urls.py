from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from todo_project import health

# The web application's routes. The Dapr sidecar's /dapr/ routes are not among them: only the
# delivery application of the Dapr delivery pods serves those (todo_project/delivery.py).
urlpatterns = [
    *health.urlpatterns,
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # Each app owns its API routes under /api/.
    path("api/", include("tasks.accounts.urls")),
    path("api/", include("tasks.urls")),
    path("api/", include("tasks.chat.urls")),
    path("api/", include("tasks.realtime.urls")),
    path("api/", include("audit.urls")),
    path("api/", include("notifications.urls")),
    # The e-mail confirmation link's page (/confirm-email/<token>/).
    path("", include("notifications.web_urls")),
    # The web app at the root: the task page, and the account pages (sign-up, sign-in, settings).
    path("", include("tasks.web.urls")),
    path("", include("tasks.accounts.web_urls")),
]

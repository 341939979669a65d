from django.urls import path

from audit.apis import AuditTrailApi

urlpatterns = [
    path("audit/", AuditTrailApi.as_view(), name="audit-trail"),
]

from django.urls import path

from tasks.realtime import views

urlpatterns = [
    path("sync/", views.SyncApi.as_view(), name="sync"),
]

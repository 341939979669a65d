from django.urls import path

from events import views

# Mounted under /dapr/ by the delivery application only (todo_project/delivery_urls.py).
urlpatterns = [
    path("subscribe", views.subscribe, name="dapr-subscribe"),
    path("config", views.config, name="dapr-config"),
    path("events/<str:consumer>", views.deliver, name="dapr-deliver"),
]

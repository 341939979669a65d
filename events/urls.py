from django.urls import path

from events import views

urlpatterns = [
    path("subscribe", views.subscribe, name="dapr-subscribe"),
    path("events/<str:consumer>", views.deliver, name="dapr-deliver"),
]

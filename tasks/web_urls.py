"""Routes of the web app (the API is under /api/, see tasks/urls.py)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from tasks import web

urlpatterns = [
    path("", web.app, name="app"),
    path("signup/", web.signup, name="signup"),
    path("login/", auth_views.LoginView.as_view(template_name="tasks/login.html", redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]

from django.urls import path

from tasks import views

urlpatterns = [
    path("auth/register/", views.RegisterApi.as_view(), name="auth-register"),
    path("auth/token/", views.TokenApi.as_view(), name="auth-token"),
    path("auth/password/", views.PasswordApi.as_view(), name="auth-password"),
    path("auth/me/", views.MeApi.as_view(), name="auth-me"),
    path("tasks/", views.TaskListApi.as_view(), name="task-list"),
    path("tasks/parse/", views.TaskParseApi.as_view(), name="task-parse"),
    path("tasks/<uuid:task_id>/", views.TaskDetailApi.as_view(), name="task-detail"),
    path("tasks/<uuid:task_id>/complete/", views.TaskCompleteApi.as_view(), name="task-complete"),
    path("tasks/<uuid:task_id>/reopen/", views.TaskReopenApi.as_view(), name="task-reopen"),
    path("sync/", views.SyncApi.as_view(), name="sync"),
    path("chat/", views.ChatApi.as_view(), name="chat"),
    path("chat/<uuid:conversation_id>/", views.ChatConversationApi.as_view(), name="chat-conversation"),
]

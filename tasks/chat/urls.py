from django.urls import path

from tasks.chat import views

urlpatterns = [
    path("tasks/parse/", views.TaskParseApi.as_view(), name="task-parse"),
    path("chat/", views.ChatApi.as_view(), name="chat"),
    path("chat/<uuid:conversation_id>/", views.ChatConversationApi.as_view(), name="chat-conversation"),
]

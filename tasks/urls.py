from django.urls import path

from tasks import views

urlpatterns = [
    path("tasks/", views.TaskListApi.as_view(), name="task-list"),
    path("tasks/<uuid:task_id>/", views.TaskDetailApi.as_view(), name="task-detail"),
    path("tasks/<uuid:task_id>/complete/", views.TaskCompleteApi.as_view(), name="task-complete"),
    path("tasks/<uuid:task_id>/reopen/", views.TaskReopenApi.as_view(), name="task-reopen"),
]

"""The tasks' REST API (CONTRACT.md section 2): thin views over tasks.selectors and tasks.services.

``validated``, ``event_context`` and ``TaskPagination`` are how every API of the project reads
input, names the request as an event's cause and pages a list; the account, chat, sync and
notification APIs use them from here."""

import zoneinfo

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from events.schemas import TASK_OBJECT
from tasks import selectors, services
from tasks.concurrency import etag, expected_version
from tasks.events import EventContext, task_object
from tasks.serializers import TaskFilterSerializer, TaskInputSerializer

SOURCE = "todo-api"


class TaskPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class TaskListPagination(TaskPagination):
    django_paginator_class = selectors.IdsFirstPaginator  # deep pages of a long list (see there)


def event_context(request):
    return EventContext(source=SOURCE, correlation_id=request.correlation_id)


def validated(serializer_class, request, data, **kwargs):
    """Validate ``data``, reading naive times in the user's time zone; 400 with field errors."""
    serializer = serializer_class(data=data, **kwargs)
    with timezone.override(zoneinfo.ZoneInfo(request.user.timezone)):
        serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def openapi_3_0(schema):
    """JSON Schema 2020-12 -> OpenAPI 3.0: ``"type": [T, "null"]`` becomes ``T`` + ``nullable``."""
    if isinstance(schema, list):
        return [openapi_3_0(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: openapi_3_0(value) for key, value in schema.items()}
    if isinstance(converted.get("type"), list):
        types = [name for name in converted["type"] if name != "null"]
        converted["type"] = types[0]
        converted["nullable"] = len(types) < len(schema["type"])
    return converted


# The task object is defined once, in events.schemas; the OpenAPI document reuses it.
TASK_SCHEMA = openapi_3_0(TASK_OBJECT)
TASK_RESPONSE = {200: TASK_SCHEMA}
# A write with If-Match: "<version>" that is no longer current changes nothing (tasks.concurrency).
IF_MATCH = OpenApiParameter(
    "If-Match", str, OpenApiParameter.HEADER,
    description='The task\'s ETag ("<version>") as last read: a stale one answers 412 with the current task.',
)
CONFLICT_RESPONSE = {412: TASK_SCHEMA}


def task_response(task, code=status.HTTP_200_OK):
    """A task answered with its version as ETag, the tag a later If-Match sends back."""
    return Response(task_object(task), status=code, headers={"ETag": etag(task.version)})


class TaskListApi(APIView):
    @extend_schema(
        operation_id="tasks_list",
        parameters=[
            TaskFilterSerializer,
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int, description="up to 200"),
        ],
        responses={
            200: {
                "type": "object",
                "title": "PaginatedTaskList",
                "properties": {
                    "count": {"type": "integer"},
                    "next": {"type": "string", "nullable": True},
                    "previous": {"type": "string", "nullable": True},
                    "results": {"type": "array", "items": TASK_SCHEMA},
                },
            }
        },
    )
    def get(self, request):
        params = request.query_params.dict()
        if "tag" in request.query_params:
            params["tag"] = request.query_params.getlist("tag")
        filters = validated(TaskFilterSerializer, request, params)
        tasks = selectors.task_list(user=request.user, tags=filters.pop("tag", ()), **filters)
        paginator = TaskListPagination()
        page = paginator.paginate_queryset(tasks, request, view=self)
        return paginator.get_paginated_response([task_object(task) for task in page])

    @extend_schema(request=TaskInputSerializer, responses={201: TASK_SCHEMA})
    def post(self, request):
        fields = validated(TaskInputSerializer, request, request.data)
        task = services.task_create(user=request.user, context=event_context(request), **fields)
        return task_response(task, code=status.HTTP_201_CREATED)


class TaskDetailApi(APIView):
    @extend_schema(responses=TASK_RESPONSE)
    def get(self, request, task_id):
        return task_response(selectors.task_get(user=request.user, task_id=task_id))

    @extend_schema(request=TaskInputSerializer, parameters=[IF_MATCH], responses={**TASK_RESPONSE, **CONFLICT_RESPONSE})
    def put(self, request, task_id):
        return self._update(request, task_id, partial=False)

    @extend_schema(
        request=TaskInputSerializer(partial=True), parameters=[IF_MATCH], responses={**TASK_RESPONSE, **CONFLICT_RESPONSE}
    )
    def patch(self, request, task_id):
        return self._update(request, task_id, partial=True)

    def _update(self, request, task_id, *, partial):
        task = selectors.task_get(user=request.user, task_id=task_id)
        changes = validated(TaskInputSerializer, request, request.data, partial=partial)
        task = services.task_update(
            task=task, context=event_context(request), expected_version=expected_version(request), **changes
        )
        return task_response(task)

    @extend_schema(parameters=[IF_MATCH], responses={204: None, **CONFLICT_RESPONSE})
    def delete(self, request, task_id):
        task = selectors.task_get(user=request.user, task_id=task_id)
        services.task_delete(task=task, context=event_context(request), expected_version=expected_version(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TaskCompleteApi(APIView):
    @extend_schema(request=None, parameters=[IF_MATCH], responses={**TASK_RESPONSE, **CONFLICT_RESPONSE})
    def post(self, request, task_id):
        task = selectors.task_get(user=request.user, task_id=task_id)
        return task_response(
            services.task_complete(task=task, context=event_context(request), expected_version=expected_version(request))
        )


class TaskReopenApi(APIView):
    @extend_schema(request=None, parameters=[IF_MATCH], responses={**TASK_RESPONSE, **CONFLICT_RESPONSE})
    def post(self, request, task_id):
        task = selectors.task_get(user=request.user, task_id=task_id)
        return task_response(
            services.task_reopen(task=task, context=event_context(request), expected_version=expected_version(request))
        )

"""The routes the Dapr sidecar calls (EVENT_TRANSPORT=dapr); the work is in events.transports.dapr.

They serve the sidecar, not users: no session, no CSRF, no DRF authentication. Only the delivery
application of the Dapr delivery pods mounts them (todo_project/delivery.py), and it refuses
every /dapr/ request without the sidecar's ``dapr-api-token`` before any of these views runs.
"""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from events.transports import dapr


@require_GET
def subscribe(request):
    return JsonResponse(dapr.subscriptions(), safe=False)


@require_GET
def config(request):
    # The sidecar asks at every start which actor types this app hosts: none.
    return JsonResponse({"entities": []})


@csrf_exempt
@require_POST
def deliver(request, consumer):
    try:
        # The raw ASGI headers: Django's request.headers leaves out Dapr's __partition, __offset, ...
        status = dapr.deliver(consumer, request.body, request.scope["headers"])
    except dapr.NotDeliverable as exc:
        # Not 404: Dapr drops a message answered 404. A misrouted message is retried and then
        # reaches the Subscription's deadLetterTopic instead of vanishing.
        return JsonResponse({"status": dapr.RETRY, "error": str(exc)}, status=503)
    if status == dapr.RETRY:
        # Dapr retries on RETRY in the body, and on any status but 2xx and 404.
        return JsonResponse({"status": dapr.RETRY}, status=503)
    return JsonResponse({"status": status})

"""The routes the Dapr sidecar calls (EVENT_TRANSPORT=dapr); the work is in events.dapr.

They serve the sidecar, not users: no session, no CSRF, no DRF authentication. When
DAPR_APP_API_TOKEN is set (Dapr's APP_API_TOKEN), a request must carry it in ``dapr-api-token``.
"""

import hmac
from functools import wraps

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from events import dapr


def sidecar_only(view):
    @wraps(view)
    def checked(request, *args, **kwargs):
        expected = settings.DAPR_APP_API_TOKEN
        if expected and not hmac.compare_digest(request.headers.get("dapr-api-token", "").encode(), expected.encode()):
            return JsonResponse({"error": "missing or wrong dapr-api-token"}, status=401)
        return view(request, *args, **kwargs)

    return csrf_exempt(checked)


@sidecar_only
@require_GET
def subscribe(request):
    return JsonResponse(dapr.subscriptions(), safe=False)


@sidecar_only
@require_POST
def deliver(request, consumer):
    try:
        status = dapr.deliver(consumer, request.body)
    except dapr.NotDeliverable as exc:
        # Not 404: Dapr drops a message answered 404. A misrouted message is retried and then
        # reaches the Subscription's deadLetterTopic instead of vanishing.
        return JsonResponse({"status": dapr.RETRY, "error": str(exc)}, status=503)
    if status == dapr.RETRY:
        # Dapr retries on RETRY in the body, and on any status but 2xx and 404.
        return JsonResponse({"status": dapr.RETRY}, status=503)
    return JsonResponse({"status": status})

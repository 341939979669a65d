"""Queries of tasks, always scoped to their owner: another user's task does not exist (404)."""

from django.core.paginator import Paginator
from django.db.models import F, Q
from django.shortcuts import get_object_or_404

from tasks.models import Task

ORDERINGS = {
    "due_date": (F("due_date").asc(nulls_last=True),),
    "-due_date": (F("due_date").desc(nulls_last=True),),
    "priority": ("priority",),
    "-priority": ("-priority",),
    "created_at": ("created_at",),
    "-created_at": ("-created_at",),
    "title": ("title",),
}
DEFAULT_ORDERING = "-created_at"


def task_list(
    *, user, completed=None, priority=None, tags=(), search=None, due_before=None, due_after=None,
    ordering=DEFAULT_ORDERING,
):
    tasks = Task.objects.filter(user=user)
    if completed is not None:
        tasks = tasks.filter(completed=completed)
    if priority is not None:
        tasks = tasks.filter(priority=priority)
    if tags:
        tasks = tasks.filter(tags__contains=list(tags))  # every tag must match; GIN-indexed
    if search:
        tasks = tasks.filter(Q(title__icontains=search) | Q(description__icontains=search))
    if due_before is not None:
        tasks = tasks.filter(due_date__lt=due_before)
    if due_after is not None:
        tasks = tasks.filter(due_date__gt=due_after)
    # The id breaks ties, so pages never repeat or skip a task.
    return tasks.order_by(*ORDERINGS[ordering], "id")


def task_get(*, user, task_id):
    return get_object_or_404(Task, user=user, pk=task_id)


class IdsFirstPaginator(Paginator):
    """Pages of a task list read in two steps: the page's ids, then those tasks by primary key.

    The ids of a page come from an index alone when one covers the filters and the order
    (task_user_newest, task_user_due_first), however deep the page: the rows that the OFFSET
    skips are never read from the table, only the page's own (a "deferred join"). Read in one
    step, the last page of 10,000 tasks read all 10,000 rows and sorted them
    (bench/bench_growth.py --part list). A task deleted between the two steps is left out.
    """

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        ids = list(self.object_list.values_list("pk", flat=True)[bottom:top])
        tasks = Task.objects.in_bulk(ids)
        return self._get_page([tasks[task_id] for task_id in ids if task_id in tasks], number, self)

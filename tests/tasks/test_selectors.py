"""The list's queries (tasks.selectors): a page's ids are read in the order of an index, never by
sorting all of the user's tasks, and the page then reads only its own rows, so that the last page
of 10,000 tasks costs about what the first does (bench/bench_growth.py --part list)."""

import pytest
from django.db import connection, transaction

from tasks.models import Task, User
from tasks.selectors import IdsFirstPaginator, task_list

pytestmark = pytest.mark.django_db


def plan_of(queryset):
    """EXPLAIN of the ids of a deep page of ``queryset`` (what IdsFirstPaginator reads first),
    with every other way than an index scan priced out, so that the plan shows whether some
    index yields them in the wanted order."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        return queryset.values_list("pk", flat=True)[9_950:10_000].explain()


@pytest.mark.parametrize("ordering, index", [("-created_at", "task_user_newest"), ("due_date", "task_user_due_first")])
def test_the_ids_of_a_page_of_the_main_orderings_are_read_in_index_order_without_a_sort(ordering, index):
    user = User.objects.create(username="reader")
    plan = plan_of(task_list(user=user, ordering=ordering))
    assert index in plan and "Sort" not in plan, plan


def test_the_ids_of_open_tasks_by_due_date_come_from_the_index_alone():
    user = User.objects.create(username="reader")
    plan = plan_of(task_list(user=user, completed=False, ordering="due_date"))
    assert "Index Only Scan using task_user_due_first" in plan and "Sort" not in plan, plan


def test_a_page_holds_the_tasks_of_its_ids_in_the_list_s_order():
    user = User.objects.create(username="reader")
    Task.objects.bulk_create(Task(user=user, title=f"Task {n:02}") for n in range(25))
    tasks = task_list(user=user, ordering="title")
    pages = IdsFirstPaginator(tasks, 10)
    titles = [[task.title for task in pages.page(number)] for number in pages.page_range]
    assert titles == [[f"Task {n:02}" for n in range(start, min(start + 10, 25))] for start in (0, 10, 20)]

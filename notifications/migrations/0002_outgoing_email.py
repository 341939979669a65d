"""E-mail apart from the consumer's transaction: one OutgoingEmail row per e-mail with its delivery
state (replacing Notification.emailed_at), and the e-mail sweep on celery beat's schedule."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from events.periodic import scheduling


SWEEP_TASK = "notifications.send_pending_emails"


def carry_over_sent_emails(apps, schema_editor):
    """Notifications e-mailed before this migration keep that fact as a sent e-mail."""
    Notification = apps.get_model("notifications", "Notification")
    OutgoingEmail = apps.get_model("notifications", "OutgoingEmail")
    emailed = Notification.objects.filter(emailed_at__isnull=False).select_related("user").iterator()
    OutgoingEmail.objects.bulk_create(
        OutgoingEmail(
            user=n.user, notification=n, kind="reminder", to=n.user.email, subject=f"Reminder: {n.title}"[:255],
            body=n.body, status="sent", attempts=1, sent_at=n.emailed_at,
        )
        for n in emailed
    )


SCHEDULE = {SWEEP_TASK: ("Send due e-mails, fail abandoned sends", 1, "minutes")}



class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name='OutgoingEmail',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('reminder', 'Reminder'), ('confirmation', 'Confirmation')], max_length=16)),
                ('to', models.EmailField(max_length=254)),
                ('subject', models.CharField(max_length=255)),
                ('body', models.TextField()),
                ('status', models.CharField(choices=[('unconfirmed', 'Not sent: address not confirmed'), ('pending', 'Pending'), ('sending', 'Sending'), ('sent', 'Sent'), ('failed', 'Failed'), ('suppressed', 'Not sent: hourly cap reached')], max_length=16)),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('last_error', models.TextField(blank=True, default='')),
                ('next_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('claimed_at', models.DateTimeField(blank=True, null=True)),
                ('sent_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('notification', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='email', to='notifications.notification')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='emails', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at'],
                'indexes': [models.Index(condition=models.Q(('status__in', ['pending', 'sending'])), fields=['status', 'next_attempt_at'], name='outgoing_email_open'), models.Index(fields=['user', 'created_at'], name='outgoing_email_user_recent')],
            },
        ),
        migrations.RunPython(carry_over_sent_emails, migrations.RunPython.noop),
        migrations.RemoveField(model_name='notification', name='emailed_at'),
        scheduling(SCHEDULE),
    ]

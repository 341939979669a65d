# The description limit of CONTRACT.md section 7 (events.schemas.DESCRIPTION_MAX_LENGTH); no change in the database.

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("tasks", "0006_user_email_confirmed"),
    ]

    operations = [
        migrations.AlterField(
            model_name="task",
            name="description",
            field=models.TextField(
                blank=True,
                default="",
                max_length=10000,
                validators=[django.core.validators.MaxLengthValidator(10000)],
            ),
        ),
    ]

"""Forms of the web app's sign-up page (sign-in uses Django's AuthenticationForm)."""

import zoneinfo

from django import forms


def timezone_choices():
    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())]


class SignupForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}))
    email = forms.EmailField(required=False, help_text="Optional: reminders are e-mailed here too.",
                             widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password = forms.CharField(strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    # The page preselects the browser's zone; due dates and recurrence are read in this zone.
    timezone = forms.ChoiceField(choices=timezone_choices, initial="UTC", label="Time zone")

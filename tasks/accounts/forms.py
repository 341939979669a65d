"""Forms of the account pages: sign-up and the settings (sign-in uses Django's AuthenticationForm)."""

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


class TimezoneForm(forms.Form):
    timezone = forms.ChoiceField(choices=timezone_choices, label="Time zone")


class EmailForm(forms.Form):
    email = forms.EmailField(required=False, label="E-mail address", widget=forms.EmailInput(attrs={"autocomplete": "email"}),
                             help_text="A new address is confirmed again: reminders go to it once you open the link we mail to it.")
    current_password = forms.CharField(strip=False, label="Current password",
                                       widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))


class PasswordForm(forms.Form):
    old_password = forms.CharField(strip=False, label="Current password",
                                   widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))
    new_password = forms.CharField(strip=False, label="New password",
                                   widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                                   help_text="Signs out your other devices and revokes your API tokens.")

// Preselect the browser's time zone on the sign-up form (unless the user already chose one).
const select = document.getElementById("id_timezone");
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
if (select && select.value === "UTC" && zone && [...select.options].some((option) => option.value === zone)) {
  select.value = zone;
}

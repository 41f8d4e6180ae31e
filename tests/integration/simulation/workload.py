"""The 14-day workload: 50 dental sites across time zones, their settings and their patients.

Sites are spread over zones whose clocks change inside the window (Europe springs forward on
Sun 28 Mar 2027; Sydney, Melbourne, Hobart, Adelaide, Lord Howe (a 30-minute change),
Auckland and Santiago fall back on 3/4 Apr 2027) and zones that do not change then (the US
changed on 14 Mar, Brisbane, Perth and Phoenix never do). Settings are mixed: staggered SMS at
several paces with several sessions a day, overnight sessions straddling the changes, immediate
SMS sharing provider accounts, blackouts, Easter closures, recipient quiet hours; email cycles
with various emails per minute, an overnight email session, a provider preset and no delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2027, 3, 21, 12, tzinfo=UTC)
"""Sun 21 Mar 2027 12:00 UTC: no email session of any site is open then (nor 14 days later),
so no email cycle is cut by the window's edges."""
END = START + timedelta(days=14)
GROUP = "g-sim"

# (zone, sites in it, how a local patient's number looks: a prefix and digits to add).
ZONES: tuple[tuple[str, int, str, int], ...] = (
    ("Europe/London", 8, "+447700", 6),
    ("Europe/Dublin", 2, "+35387", 7),
    ("Europe/Berlin", 2, "+49151", 8),
    ("Australia/Sydney", 7, "+614", 8),  # Australian mobiles carry no zone: the site's applies
    ("Australia/Melbourne", 3, "+614", 8),
    ("Australia/Adelaide", 2, "+614", 8),
    ("Australia/Hobart", 1, "+614", 8),
    ("Australia/Lord_Howe", 1, "+614", 8),
    ("Australia/Brisbane", 2, "+614", 8),
    ("Australia/Perth", 2, "+614", 8),
    ("Pacific/Auckland", 6, "+6421", 7),
    ("America/Santiago", 2, "+569", 8),  # not a single-zone country in the table: site's zone
    ("America/New_York", 6, "+1212555", 4),
    ("America/Chicago", 2, "+1312555", 4),
    ("America/Los_Angeles", 3, "+1415555", 4),
    ("America/Phoenix", 1, "+1602555", 4),
)

# Patients elsewhere: a number whose zone the gateway knows and that differs from the site's.
# East-coast sites text some Californian patients (three hours behind: 09:00 in New York is
# 06:00 for them); London sites text some New Zealanders (never inside their quiet hours while
# London sessions run, so they must wait, whatever the ticks say).
AWAY: dict[str, tuple[str, str, int]] = {
    "America/New_York": ("America/Los_Angeles", "+1415555", 4),
    "Europe/London": ("Pacific/Auckland", "+6421", 7),
}
AWAY_EVERY = 10
"""Every tenth message of an over-supplied site with a far-away patient list goes there."""

EASTER = [
    {"start": "2027-03-26", "end": "2027-03-26", "label": "Good Friday"},
    {"start": "2027-03-29", "end": "2027-03-29", "label": "Easter Monday"},
]
EASTER_ZONES = ("Europe/", "Australia/", "Pacific/")

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
ALL_DAYS = [*WEEKDAYS, "sat", "sun"]


def window(days: list[str], start: str, end: str) -> dict[str, Any]:
    """A weekly session or blackout."""
    return {"days": days, "start": start, "end": end}


# SMS settings, cycled over the sites. Sessions lie inside the quiet hours in the site's zone,
# so patients there can always take a tick; overnight sessions come with all-day quiet hours.
SMS_TEMPLATES: tuple[dict[str, Any], ...] = (
    {  # two weekday sessions, one SMS every 90 minutes
        "mode": "staggered",
        "every_minutes": 90,
        "sessions": [window(WEEKDAYS, "09:00", "12:00"), window(WEEKDAYS, "13:00", "17:00")],
    },
    {  # every day, morning and evening, one an hour, narrower quiet hours
        "mode": "staggered",
        "every_minutes": 60,
        "sessions": [window(ALL_DAYS, "08:30", "10:00"), window(ALL_DAYS, "18:00", "19:30")],
        "quiet_hours": {"start": "08:15", "end": "20:45"},
    },
    {  # overnight Friday and Saturday nights: straddles 01:00-03:00 on both change Sundays,
        # one every 45 minutes
        "mode": "staggered",
        "every_minutes": 45,
        "sessions": [window(["fri", "sat"], "22:00", "03:30")],
        "quiet_hours": {"start": "00:00", "end": "23:59"},
    },
    {  # immediate: the account's rate, not the sessions
        "mode": "immediate",
        "every_minutes": 3,
    },
    {  # one every 2 hours, Mon-Sat, around a lunchtime blackout (the site's backup window)
        "mode": "staggered",
        "every_minutes": 120,
        "sessions": [window([*WEEKDAYS, "sat"], "08:00", "18:00")],
        "quiet_hours": {"start": "07:30", "end": "19:00"},
    },
    {  # early Sunday (the whole change hour) and a weekday hour
        "mode": "staggered",
        "every_minutes": 40,
        "sessions": [window(["sun"], "00:00", "04:00"), window(WEEKDAYS, "10:00", "11:00")],
        "quiet_hours": {"start": "00:00", "end": "23:59"},
    },
)
OVERNIGHT_TEMPLATE = 2
BLACKOUT_TEMPLATE = 4
CHANGING = (
    "Europe/London",
    "Europe/Dublin",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Melbourne",
    "Australia/Adelaide",
    "Australia/Hobart",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "America/Santiago",
)
"""Zones whose clocks change between START and END."""
LUNCH_BLACKOUT = window(ALL_DAYS, "12:00", "12:45")

# Email settings, cycled over the sites (None: email disabled).
EMAIL_TEMPLATES: tuple[dict[str, Any] | None, ...] = (
    {  # one every 10 minutes, checked every 4 (most cycles hold no slot of the rate)
        "check_every_minutes": 4,
        "per_minute": 0.1,
        "sessions": [window(WEEKDAYS, "07:00", "07:20")],
    },
    None,
    {  # overnight Mon-Thu nights and a Saturday morning, one every 20 minutes
        "check_every_minutes": 20,
        "per_minute": 0.05,
        "sessions": [
            window(["mon", "tue", "wed", "thu"], "23:20", "01:00"),
            window(["sat"], "10:00", "11:00"),
        ],
    },
    {  # one every 2 minutes, checked every 5 (the grid of sends is not the grid of cycles)
        "check_every_minutes": 5,
        "per_minute": 0.5,
        "sessions": [window(WEEKDAYS, "08:00", "08:10")],
    },
    None,
    {  # no delay: everything queued goes at the next cycle
        "check_every_minutes": 15,
        "per_minute": 0,
        "sessions": [window(["tue", "thu"], "08:00", "09:00")],
    },
    {  # Microsoft 365 caps 40 a minute to 30 (one every 2 s), one short session a week
        "check_every_minutes": 1,
        "per_minute": 40,
        "provider_preset": "microsoft_365",
        "sessions": [window(["wed"], "07:00", "07:01")],
    },
)

IMMEDIATE_RATE = 0.05
"""Immediate-mode accounts send one SMS every 20 s."""


@dataclass(frozen=True)
class SiteSpec:
    """One site of the workload."""

    site_id: str
    zone: str
    number_prefix: str
    number_digits: int
    sms: dict[str, Any]
    email: dict[str, Any] | None
    blackouts: list[dict[str, Any]]
    closures: list[dict[str, Any]]
    sms_account: str
    oversupply: bool
    """True: queue more than the window can send (the sessions bind); False: half of it."""

    @property
    def immediate(self) -> bool:
        return bool(self.sms["mode"] == "immediate")

    def patch(self) -> dict[str, Any]:
        """The settings patch the config API is given for this site."""
        sms = {k: v for k, v in self.sms.items()}
        sms["provider"] = {
            "kind": "simulator",
            "account_id": self.sms_account,
            "secret": f"key-{self.sms_account}",
            "base_url": "http://127.0.0.1:9",
            "rate_per_second": IMMEDIATE_RATE if self.immediate else 50,
        }
        sms["sender_id"] = "Smiles"
        patch: dict[str, Any] = {"sms": sms, "blackouts": self.blackouts, "closures": self.closures}
        if self.email is None:
            patch["email"] = {"enabled": False}
        else:
            patch["email"] = {
                "enabled": True,
                "address": f"frontdesk@{self.site_id}.example.com",
                "smtp": {"host": "smtp.example.com", "port": 587},
                "mode": "automatic",
                **self.email,
            }
        return patch

    def recipient(self, i: int) -> tuple[str, str]:
        """The i-th SMS patient: (E.164 number, the zone whose quiet hours apply)."""
        away = AWAY.get(self.zone)
        if away is not None and self.oversupply and i % AWAY_EVERY == AWAY_EVERY - 1:
            zone, prefix, digits = away
            return f"{prefix}{i:0{digits}d}", zone
        return f"{self.number_prefix}{i:0{self.number_digits}d}", self.zone


def sites() -> list[SiteSpec]:
    """The 50 sites."""
    found: list[SiteSpec] = []
    immediate_seen = 0
    for zone, count, prefix, digits in ZONES:
        for k in range(count):
            i = len(found)
            sms = SMS_TEMPLATES[i % len(SMS_TEMPLATES)]
            if k == 0 and zone in CHANGING:
                # Each zone that changes its clocks in the window has a site whose session
                # straddles the change itself.
                sms = SMS_TEMPLATES[OVERNIGHT_TEMPLATE]
            email = EMAIL_TEMPLATES[(3 * i) % len(EMAIL_TEMPLATES)]
            account = f"acct-{i:02d}"
            if sms["mode"] == "immediate":
                # Immediate sites share provider accounts in pairs: the account's rate is
                # shared by their ticks.
                account = f"acct-shared-{immediate_seen // 2}"
                immediate_seen += 1
            found.append(
                SiteSpec(
                    site_id=f"s{i:02d}-{zone.split('/')[-1].lower().replace('_', '')}-{k}",
                    zone=zone,
                    number_prefix=prefix,
                    number_digits=digits,
                    sms=sms,
                    email=email,
                    blackouts=[LUNCH_BLACKOUT] if sms is SMS_TEMPLATES[BLACKOUT_TEMPLATE] else [],
                    closures=EASTER if zone.startswith(EASTER_ZONES) and i % 3 else [],
                    sms_account=account,
                    oversupply=i % 4 != 3,
                )
            )
    assert len(found) == 50
    return found

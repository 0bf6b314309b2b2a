"""Events: workshops, courses, bookings, waiting lists and attendance."""

NAME = "events"

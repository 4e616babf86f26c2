"""Web push to the residents' page: anonymous subscriptions per village, an outbox of messages,
and a worker that sends them to the browsers' push services (README, "Web push")."""

"""Social queue tasks (on the distribution queue): thin wrappers that call a service."""

from __future__ import annotations

from celery import shared_task

from apps.social import services


@shared_task(name="distribution.social_publish", acks_late=True)
def social_publish(post_id: int) -> str | None:
    """Publish one approved post (enqueued when its approval commits).

    Safe to run twice or concurrently: the post is claimed with a conditional UPDATE (approved -> publishing) that
    also requires its approval request to be approved, so a second run finds nothing to claim and returns None.
    """
    return services.post_publish(post_id=post_id)


@shared_task(name="distribution.social_publish_due", acks_late=True)
def social_publish_due() -> dict[str, int]:
    """Publish approved posts that are due: held-back drafts, retries after backoff or a rate limit, and anything
    whose enqueue was lost; reclaim publications whose worker died (beat).

    Safe to run twice or concurrently: each post is claimed by one conditional UPDATE before it is published, and a
    stuck post is reclaimed only while its claim is unchanged.
    """
    return services.posts_publish_due()

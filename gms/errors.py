"""The GMS's one exception root."""


class GmsError(Exception):
    """A group operation was refused (unknown group, member already in, bad URI, …); the text is for users."""


class UnknownGroup(GmsError):
    """No group with this URI."""


class DeliveryFailed(GmsError):
    """A member's group-key MESSAGE was not accepted (the text says who and why)."""

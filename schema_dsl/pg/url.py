"""PostgreSQL URLs: never show their password (standard library only). Which --db is a URL is the dialect
registry's one rule (dialects.is_postgresql)."""
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

MASK = "***"


def for_libpq(url):
    """The URL as libpq reads it: its scheme in lower case. A scheme is case-insensitive (RFC 3986) and
    dialects.is_postgresql takes POSTGRESQL:// as PostgreSQL, but libpq knows only postgresql:// and postgres://
    and reads any other text as key=value pairs ('missing "=" after ...')."""
    scheme, sep, rest = url.partition("://")
    return scheme.lower() + sep + rest


def passwords(url):
    """The passwords a URL carries (in its user part or as ?password=), as written and decoded."""
    out = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            out |= {parts.password, unquote(parts.password)}
        out |= {v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "password" and v}
    except ValueError:
        pass
    return {p for p in out if p}


def mask(url):
    """The URL with its password replaced by ***, for every message and report."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unreadable PostgreSQL URL>"
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = "%s:%s@%s" % (user.split(":", 1)[0], MASK, host)
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k == "password" for k, _ in pairs):
        query = urlencode([(k, MASK if k == "password" else v) for k, v in pairs], safe="/:*", quote_via=quote)
    if netloc == parts.netloc and query == parts.query:
        return scrub(url, url)
    text = "%s://%s%s%s%s" % (parts.scheme, netloc, parts.path, "?" + query if query else "",
                              "#" + parts.fragment if parts.fragment else "")
    return scrub(text, url)


def scrub(text, url):
    """text with every password of url replaced by *** (for messages that quote a driver's error)."""
    for secret in sorted(passwords(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text

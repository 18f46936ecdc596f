"""Words for output a person reads (standard library only, at the bottom of the layers with errors and sqlite/)."""


def plural(n, word, words=None):
    """'1 row', '2 rows', '0 named indexes' (words: the plural, when it is not word + 's').

    >>> plural(1, "row"), plural(2, "row"), plural(0, "index", "indexes")
    ('1 row', '2 rows', '0 indexes')
    """
    return "%d %s" % (n, word if n == 1 else (words or word + "s"))

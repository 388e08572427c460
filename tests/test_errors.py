"""find_user_error: our one-line error dug out of the wrappers MONAI puts around config components."""

from unetkit.errors import DataError, find_user_error


def _wrapped():
    try:
        try:
            raise DataError("missing", path="/data/x")
        except DataError as inner:
            raise RuntimeError("Failed to instantiate {...}") from inner
    except RuntimeError as outer:
        return outer


def test_the_error_inside_monais_wrapper_is_found():
    found = find_user_error(_wrapped())
    assert isinstance(found, DataError) and str(found).startswith("/data/x")


def test_an_error_raised_while_handling_ours_still_leads_to_ours():
    try:
        try:
            raise DataError("missing")
        except DataError:
            raise KeyError("while handling")  # implicit context, no 'from'
    except KeyError as e:
        assert isinstance(find_user_error(e), DataError)


def test_a_foreign_error_has_none():
    assert find_user_error(ValueError("x")) is None

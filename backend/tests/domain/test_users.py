"""Phone masking: the middle is hidden whatever the number's length."""

from __future__ import annotations

import pytest

from minishop.domain.users import mask_phone


def test_a_mainland_mobile_number_shows_its_head_and_tail() -> None:
    assert mask_phone("13812341234") == "138****1234"


@pytest.mark.parametrize("length", range(1, 21))
def test_the_middle_is_hidden_for_any_length(length: int) -> None:
    phone = "".join(str(i % 10) for i in range(1, length + 1))
    masked = mask_phone(phone)
    assert len(masked) == length
    hidden = masked.count("*")
    assert hidden >= min(length, 4)
    assert length - hidden <= 7
    assert "*" * hidden in masked  # one run of stars ...
    shown = masked.replace("*", "")
    assert phone.startswith(shown[: masked.index("*")])  # ... between a true head
    assert phone.endswith(masked[masked.rindex("*") + 1 :])  # and a true tail


@pytest.mark.parametrize("phone", ["1381234", "12345", "+8613812341234"])
def test_short_and_international_numbers_never_show_every_digit(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked != phone
    assert "****" in masked

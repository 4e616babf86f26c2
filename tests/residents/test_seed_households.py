"""The Gimcheon preset at full scale: 56,000 households, a third with an indoor receiver, half
with a resident whose synthetic number is sealed as a real one is."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from gateway.db import create_engine, create_sessions
from gateway.residents.crypto import PhoneCipher, is_synthetic_number, synthetic_number
from gateway.residents.models import Household, Resident
from gateway.residents.service import resident_context
from gateway.seed import seed
from gateway.speakers.models import Speaker

pytestmark = [pytest.mark.slow]

SECRET = b"test phone key, long enough to be a secret"


def test_synthetic_numbers_are_the_never_assigned_range() -> None:
    assert synthetic_number(0) == "01000000000"
    assert synthetic_number(27_999) == "01000027999"
    assert all(is_synthetic_number(synthetic_number(n)) for n in (0, 1234, 9_999_999))
    assert not is_synthetic_number("01012345678")
    assert not is_synthetic_number("01099990000")
    with pytest.raises(ValueError, match="ten million"):
        synthetic_number(10_000_000)


# The seed's bulk inserts are plain SQLAlchemy Core; one database keeps the suite's time.
@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
async def test_gimcheon_seeds_56000_households(migrated_database_url: str) -> None:
    cipher = PhoneCipher(SECRET)
    engine = create_engine(migrated_database_url)
    try:
        async with create_sessions(engine)() as session:
            report = await seed(session, preset="gimcheon", city_code="gimcheon", cipher=cipher)
            await session.commit()
            assert (report.villages, report.households) == (568, 56_000)
            assert 0.30 < report.receivers / report.households < 0.37
            assert 0.47 < report.residents / report.households < 0.53

            def count(*where: object) -> object:
                return select(func.count()).where(*where)  # type: ignore[arg-type]

            assert await session.scalar(count(Household.id.is_not(None))) == 56_000
            receivers = await session.scalar(count(Speaker.kind == "household_receiver"))
            linked = await session.scalar(count(Household.receiver_id.is_not(None)))
            assert receivers == linked == report.receivers
            assert (
                await session.scalar(select(func.count(func.distinct(Resident.phone_lookup))))
                == report.residents
            )
            residents = (await session.scalars(select(Resident).limit(200))).all()
            for resident in residents:
                assert resident.phone_key_id is not None
                assert resident.phone_ciphertext is not None
                number = cipher.open(
                    resident.phone_key_id,
                    resident.phone_ciphertext,
                    context=resident_context(resident.id),
                )
                assert is_synthetic_number(number)
                assert resident.phone_last4 == number[-4:]
                assert resident.household_id is not None
    finally:
        await engine.dispose()

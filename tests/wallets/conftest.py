from tests.fixtures.fake_privy import fake_privy  # noqa: F401 - fixture

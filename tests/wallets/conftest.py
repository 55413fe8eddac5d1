from tests.fixtures.anvil import anvil, fresh_anvil  # noqa: F401 - fixtures
from tests.fixtures.fake_privy import fake_privy  # noqa: F401 - fixture
from tests.fixtures.fake_trongrid import fake_tron  # noqa: F401 - fixture

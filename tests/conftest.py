pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.redis_servers",
    "tests.fixtures.cognito",
    "tests.fixtures.rabbitmq",  # before callbacks, which imports it
    "tests.fixtures.callbacks",
    "tests.fixtures.receiver",
    "tests.fixtures.fake_ses",
]

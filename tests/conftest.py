pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.redis_servers",
    "tests.fixtures.cognito",
    "tests.fixtures.callbacks",
    "tests.fixtures.receiver",
    "tests.fixtures.rabbitmq",
    "tests.fixtures.fake_ses",
]

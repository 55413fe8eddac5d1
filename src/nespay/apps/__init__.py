"""The three processes, each built from the domains by `nespay.apps.common.build_app`."""

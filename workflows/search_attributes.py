"""Custom search attributes: how an operator finds an order in the Temporal UI and the CLI."""
from temporalio.common import SearchAttributeKey

SA_CONNECTION = SearchAttributeKey.for_keyword("MlConnection")
SA_ORDER_NUMBER = SearchAttributeKey.for_keyword("MlOrderNumber")
SA_ERP_DOCUMENT = SearchAttributeKey.for_keyword("MlErpDocument")
SA_STATE = SearchAttributeKey.for_keyword("MlState")
SEARCH_ATTRIBUTES = (SA_CONNECTION, SA_ORDER_NUMBER, SA_ERP_DOCUMENT, SA_STATE)


def dev_server_args() -> list[str]:
    """``temporal server start-dev`` flags that register the search attributes."""
    args: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    return args

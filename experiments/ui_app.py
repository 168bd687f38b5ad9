"""The app `litbench ui` serves: MLflow's own server app, whose UI page opens in the model-training view.

MLflow 3.17's UI keeps the choice between its GenAI and model-training views in the browser's
localStorage (``mlflow.workflowType_v1``), GenAI by default, and ignores the experiment tag
``mlflow.experimentKind``. So a user who opens a grid's experiment from the experiment list lands on
traces and token usage, not on the runs. This app adds one line to the UI's page: where the browser
has made no choice yet, it records the model-training view (and that the AI assistant's panel, which
needs an LLM provider, has opened itself once). A choice the user makes in the UI is kept.
Everything else is ``mlflow server``'s app unchanged, registered as the ``litbench`` entry point of
``mlflow.app`` (``mlflow server --app-name litbench``).
"""

from __future__ import annotations

import json

from flask import Response, request
from mlflow.server import app as flask_app
from mlflow.server.fastapi_app import app as fastapi_app

# The UI's useLocalStorage keys ("<key>_v<version>") and the JSON values litbench starts a browser with
DEFAULTS = {
    "mlflow.workflowType_v1": "machine_learning",  # the model-training view: runs, not traces
    # the AI assistant's panel opens itself on a first visit and covers a third of the runs table; it
    # needs an LLM provider, which an offline benchmark machine does not have
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
}
DEFAULTS_SCRIPT = (
    "<script>try{var d=" + json.dumps(DEFAULTS) + ";for(var k in d)if(localStorage.getItem(k)===null)"
    "localStorage.setItem(k,JSON.stringify(d[k]))}catch(e){}</script>"
)


@flask_app.after_request
def _open_in_training_view(response: Response) -> Response:
    if request.path != "/" or response.mimetype != "text/html":  # `litbench ui` sets no static prefix
        return response
    response.direct_passthrough = False  # index.html is sent as a file; read it to edit it
    page = response.get_data(as_text=True)
    if "</head>" in page and DEFAULTS_SCRIPT not in page:
        response.set_data(page.replace("</head>", DEFAULTS_SCRIPT + "</head>", 1))
        response.headers.pop("ETag", None)  # the bytes differ from the file's
    return response


app = fastapi_app

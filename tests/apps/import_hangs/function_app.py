"""An app whose import never finishes: start-up must give up at its limit."""

import time

while True:
    time.sleep(0.1)

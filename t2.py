import json, time
import paho.mqtt.client as mqtt
res=[]
c=mqtt.Client(client_id="adm", protocol=mqtt.MQTTv5)
c.username_pw_set("admin","adminpw")
c.on_message=lambda c,u,m: res.append(json.loads(m.payload))
c.connect("127.0.0.1",18931); c.loop_start()
c.subscribe("$CONTROL/dynamic-security/v1/response",1); time.sleep(0.3)
t=time.time()
c.publish("$CONTROL/dynamic-security/v1", json.dumps({"commands":[{"command":"setClientPassword","username":"s2","password":"new"},{"command":"deleteClient","username":"s1"}]}),qos=1)
time.sleep(0.5); print(res)

package api

import "github.com/jettythunder/jetty/server"

// errJettySpeedOff answers a session open when JETTYSPEED_ENABLED=false.
var errJettySpeedOff = server.Errorf(server.EJettySpeedOff, "chunked uploads (JettySpeed) are turned off on this server (JETTYSPEED_ENABLED=false): send the file in one request, POST /api/storage/upload (jetty upload does so by itself)")

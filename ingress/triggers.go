package ingress

import "github.com/gin-gonic/gin"

// triggerRoutes registers the trigger APIs besides BuilderBot's dispatch:
// native, CloudEvents, Botmother, Engati and Recrubo.
func (s *server) triggerRoutes(r *gin.Engine, bot *gin.RouterGroup) {}
